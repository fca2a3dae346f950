#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Batch inference as Slurm array jobs on the local cluster, on Fashion-MNIST:
#  (a) jobs/infer-submit: a 4-task array and its merge job (afterany): the
#      merged predictions equal a single-process run over all samples, the
#      report's accuracy is the trainer's evaluation of the same model, and
#      the test set (a fresh sample of the training distribution) is not
#      flagged as drifted;
#  (b) one task killed midway (SIGKILL between writing its part and
#      committing it): status lists exactly it, merge refuses naming it, its
#      resubmission alone completes the set, merge succeeds; the whole array
#      run again recomputes nothing;
#  (c) the merge job finds a part missing and resubmits it by itself, then
#      merges;
#  (d) drift: brightened images are flagged.
. "$(dirname "$0")/lib.sh"
need_test_hooks
cluster_start 3

work=$CLUSTER_DIR/work
mkdir -p "$work"
cd "$work"
export PATH=$abs_top_builddir/io:$abs_top_builddir/trainer:$abs_top_builddir/serve-batch:$PATH
jobs=$abs_top_srcdir/jobs
fm=${DML_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
[ -e "$fm/t10k-images-idx3-ubyte.gz" ] || [ -e "$fm/t10k-images-idx3-ubyte" ] ||
    skip_or_fail "Fashion-MNIST is not installed in $fm (package dataset-fashion-mnist)"
same() { # file-a file-b dataset
    h5dump -d "/$3" -b LE -o a.bin "$1" >/dev/null && h5dump -d "/$3" -b LE -o b.bin "$2" >/dev/null && cmp -s a.bin b.bin
}
# Waits until no job of ours is pending or running.
all_done() { # timeout
    local deadline=$((SECONDS + $1))
    while squeue -h -t PENDING,RUNNING,CONFIGURING,COMPLETING | grep -q .; do
        [ $SECONDS -lt $deadline ] || fail_logs "jobs still queued after $1 s: $(squeue)" ./*.out
        sleep 0.5
    done
}

dml-data convert --fashion-mnist="$fm" --out "$work/fm" >/dev/null 2>&1 || fail "converting Fashion-MNIST failed"
"$MPIRUN" --oversubscribe -np 2 dml-train --train fm/train --test fm/test --model mlp:784-128-10 \
    --batch 64 --epochs 1 --seed 3 --log-every 0 --output "$work/model.h5" >train.out 2>&1 ||
    fail_logs "training failed" train.out
acc=$(grep -o 'test loss [0-9.]* acc [0-9.]*' train.out | tail -n 1 | awk '{print $5}')
run=(--model "$work/model.h5" --input "$work/fm/test")

# ---- (a) the array and its merge -------------------------------------------
sub=$("$jobs/infer-submit" --parts 4 --max-running 2 --resubmit 0 "${run[@]}" --out "$work/oa") ||
    fail "infer-submit refused"
mrg=$(echo "$sub" | sed -n 's/.*merge job \([0-9]*\).*/\1/p')
all_done 300
[ "$(job_wait "$mrg" 10)" = COMPLETED ] || fail_logs "(a) merge job $mrg ended $(job_wait "$mrg" 10)" ./*.out
dml-infer run "${run[@]}" --out "$work/o1" --task 0 --tasks 1 2>/dev/null && dml-infer merge --out "$work/o1" >/dev/null ||
    fail "(a) the single-process run failed"
for d in id pred label topk_class topk_prob; do
    same oa/predictions.h5 o1/predictions.h5 $d || fail "(a) 4 array tasks and one process differ in $d"
done
[ "$(json oa/report.json '"%.4f" % d["accuracy"]')" = "$acc" ] ||
    fail_logs "(a) report accuracy is not the trainer's $acc" oa/report.json
[ "$(json oa/report.json 'd["drift"]["drifted"]')" = False ] || fail_logs "(a) the test set was flagged as drifted" oa/report.txt
grep -q "^accuracy $acc" dml-infer-merge-"$mrg".out || fail_logs "(a) no text report in the merge job's log" dml-infer-merge-"$mrg".out
echo "ok (a): 4-task array + merge == one process; accuracy $acc as the trainer's; no drift on the test set"

# ---- (b) a task killed midway ------------------------------------------------
touch crash-once
arr=$(DML_INFER_CRASH="2:$work/crash-once" sbatch --parsable --array=0-3 "$jobs/infer-array.sbatch" \
    "${run[@]}" --out "$work/ob" --tasks 4) || fail "sbatch refused the array"
all_done 300
[ ! -e crash-once ] || fail "(b) task 2 did not reach its crash point"
ls ob/.part-00002.h5.tmp.* >/dev/null 2>&1 || fail "(b) the killed task left no partial part"
rc=0; dml-infer status --out ob >status.out || rc=$?
[ $rc -eq 3 ] || fail_logs "(b) status exited $rc, expected 3" status.out
[ "$(dml-infer status --out ob --array-list || true)" = 2 ] || fail_logs "(b) status does not list exactly part 2" status.out
rc=0; dml-infer merge --out ob 2>merge.err || rc=$?
[ $rc -eq 3 ] && grep -q "part 2 is missing" merge.err || fail_logs "(b) merge did not refuse naming part 2 (rc $rc)" merge.err
sbatch --parsable --array=2 "$jobs/infer-array.sbatch" "${run[@]}" --out "$work/ob" --tasks 4 >/dev/null ||
    fail "sbatch refused the resubmission"
all_done 300
dml-infer status --out ob >status.out || fail_logs "(b) still incomplete after the resubmission" status.out ./*"_2".out
dml-infer merge --out ob >/dev/null || fail "(b) merge failed after the resubmission"
same ob/predictions.h5 o1/predictions.h5 pred || fail "(b) predictions differ after the resubmission"
before=$(stat -c '%n %Y %s' ob/part-*.h5)
again=$(sbatch --parsable --array=0-3 "$jobs/infer-array.sbatch" "${run[@]}" --out "$work/ob" --tasks 4)
all_done 300
[ "$(grep -l "is complete for model .*nothing to do" dml-infer-"$again"_*.out | wc -l)" -eq 4 ] ||
    fail_logs "(b) the rerun of a complete array computed something" dml-infer-"$again"_*.out
[ "$(stat -c '%n %Y %s' ob/part-*.h5)" = "$before" ] || fail "(b) the rerun rewrote parts"
echo "ok (b): killed task listed alone, resubmitted alone, merged; the rerun recomputed nothing"

# ---- (c) the merge job resubmits what is missing -------------------------------
touch crash-once
sub=$(DML_INFER_CRASH="1:$work/crash-once" "$jobs/infer-submit" --parts 3 --resubmit 1 "${run[@]}" --out "$work/oc") ||
    fail "infer-submit refused"
mrg=$(echo "$sub" | sed -n 's/.*merge job \([0-9]*\).*/\1/p')
all_done 300
grep -q "parts 1 resubmitted" dml-infer-merge-"$mrg".out || fail_logs "(c) the merge job did not resubmit part 1" dml-infer-merge-"$mrg".out
[ -s oc/predictions.h5 ] && [ "$(json oc/report.json 'd["samples"]')" = 10000 ] || fail_logs "(c) no merge after the resubmission" ./dml-infer-merge-*.out
echo "ok (c): the merge job resubmitted part 1 and merged after it"

# ---- (d) drift ---------------------------------------------------------------
python3 - "$fm" <<'PY'
import gzip, os, sys
d = sys.argv[1]
def raw(name):
    p = os.path.join(d, name)
    return gzip.open(p + ".gz").read() if os.path.exists(p + ".gz") else open(p, "rb").read()
img, lab = raw("t10k-images-idx3-ubyte"), raw("t10k-labels-idx1-ubyte")
# Brighter, lower-contrast images: v -> 60 + 0.7 v
px = bytes(min(255, 60 + (v * 7) // 10) for v in img[16:])
open("shifted-images-idx3-ubyte", "wb").write(img[:16] + px)
open("shifted-labels-idx1-ubyte", "wb").write(lab)
PY
dml-data convert --idx-images shifted-images-idx3-ubyte --idx-labels shifted-labels-idx1-ubyte \
    --out "$work/shifted" >/dev/null 2>&1 || fail "(d) converting the shifted images failed"
dml-infer run --model "$work/model.h5" --input "$work/shifted" --out "$work/od" --task 0 --tasks 1 2>/dev/null &&
    dml-infer merge --out "$work/od" >od.txt || fail "(d) inference on the shifted data failed"
[ "$(json od/report.json 'd["drift"]["drifted"]')" = True ] || fail_logs "(d) shifted data not flagged" od.txt
echo "ok (d): shifted data flagged: $(grep '^drift' od.txt)"
echo PASS
